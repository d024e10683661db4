"""Loading the steering programs from bpf/ and keeping their maps in step with config."""
