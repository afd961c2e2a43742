"""Helpers of the deploy checks: render the manifests, build the alert rules and their unit tests,
run promtool and Prometheus, probe as the kubelet does. Used by ``make deploy-check``, tests/deploy
and ``make image-test``; imports nothing itself (``kubeprobe`` runs under any Python 3.11)."""
