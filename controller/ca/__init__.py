"""The certificate authority: the root (or a user-supplied intermediate), workload signing, trust bundle."""
