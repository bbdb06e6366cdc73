"""The embedded OSCAR's MinIO: an S3 endpoint in front of the object store (a moto server, or
any S3 server) that does what MinIO does for OSCAR and moto does not.

- :mod:`.front`: the endpoint clients use. It checks every request's SigV4 signature against
  the keys of MinIO's users, applies their policies, answers MinIO's own calls (bucket
  notifications, ``ListenBucketNotification``) and forwards the rest to the store, signed
  with the store's keys; the store's own admin routes are never reachable.
- :mod:`.iam`: users, groups and canned policies (what OSCAR drives through madmin).
- :mod:`.events`: event records, webhook targets, notification configurations, listeners.
- :mod:`.sigv4`, :mod:`.actions`, :mod:`.errors`: signatures, policy actions, XML errors.
"""
