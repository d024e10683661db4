from nodemesh.tools.sim.kubelet.main import main

if __name__ == "__main__":
    main()
