from nodemesh.tools.sim.kubelet.main import main

main()
