"""What runs inside an OSCAR service container, emulated on the host.

Every release the embedded OSCAR emulates (v3.6.5, v3.7.1, v4.0.0, v4.1.2) deploys the same
grycap/faas-supervisor release, 1.6.2: the grycap/helm-charts ``oscar`` chart of each of those
versions sets ``volume.supervisorVersion: "1.6.2"``, which ``populate-oscar-volume-job.yaml``
hands to grycap/oscar's ``tools/oscar-bin-downloader``. Synchronous requests reach the
supervisor through openfaas/classic-watchdog 0.2.1 (``volume.watchdogVersion``), asynchronous
ones through the job's ``sh -c "echo $EVENT | supervisor"`` (grycap/oscar ``pkg/handlers/job.go``).

Modules, named after the supervisor's own: :mod:`.logs` (its logger), :mod:`.events` (event
parsing and the input file), :mod:`.storage` (credentials, download, upload), :mod:`.response`
(the answer it prints), :mod:`.process` (running the script), and :mod:`.reaper`, the fork
server that gives each script a subreaper so that nothing it starts outlives its run.
"""
