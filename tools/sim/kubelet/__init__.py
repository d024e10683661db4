"""The sim kubelet: runs the Pods a real API server binds to a simulated node (``sim up --kube``).

Sans-IO pieces (a Pod's spec -> what to run: ``envvars``, ``qos``, ``volumes``, ``podstatus``,
``backoff``, ``addresses``, ``nodeobject``, probe bookkeeping in ``probes``) sit apart from the
I/O (``runtime`` makes netns, cgroups and processes, ``mountinit`` a container's mounts,
``podvolumes`` fetches and writes volume files, ``node`` keeps the Node and its Lease, ``pods``
runs one Pod, ``main`` watches).
"""
