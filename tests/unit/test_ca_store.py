"""Where the CA comes from: a root made once and kept, or the user's intermediate; extra roots for
rotation; and every way the material can be wrong, refused with the file named."""

from __future__ import annotations

import datetime as dt
import stat

import pytest
from cryptography import x509
from cryptography.x509.verification import VerificationError

from nodemesh.controller.ca.store import CaError, root_path, self_signed, user_supplied
from nodemesh.identity import key_pem, new_key

from ca_material import UserCa, ca_cert, to_pem, verified_path

ID = "spiffe://cluster.local/ns/shop/sa/web"
DAY = dt.timedelta(days=1)


def issue(authority) -> bytes:
    return authority.issue_workload(new_key().public_key(), ID, DAY).chain_pem


def test_first_start_makes_a_root_and_later_starts_reuse_it(tmp_path):
    first = self_signed(tmp_path)
    ca = tmp_path / "ca"
    assert stat.S_IMODE((ca / "root-key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(ca.stat().st_mode) == 0o700
    assert sorted(p.name for p in ca.iterdir()) == ["root-key.pem", "root.pem"]
    root = x509.load_pem_x509_certificate(root_path(tmp_path).read_bytes())
    assert root == first.cert and first.roots == (root,) and first.intermediates == ()
    constraints = root.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert (constraints.ca, constraints.path_length) == (True, 1)
    assert root.public_key().curve.name == "secp256r1"
    years = (root.not_valid_after_utc - root.not_valid_before_utc).days / 365
    assert 9.9 < years < 10.1
    assert first.bundle_pem == root_path(tmp_path).read_bytes()

    again = self_signed(tmp_path)
    assert again.cert == first.cert
    # a chain issued before the restart still verifies against the bundle after it
    assert verified_path(issue(first), again.bundle_pem)[-1] == root


@pytest.mark.parametrize("kept", ["root.pem", "root-key.pem"])
def test_half_a_root_is_refused_not_replaced(tmp_path, kept):
    self_signed(tmp_path)
    for f in (tmp_path / "ca").iterdir():
        if f.name != kept:
            f.unlink()
    with pytest.raises(CaError, match=f"{kept} exists but .* does not: restore it, or remove"):
        self_signed(tmp_path)
    assert [p.name for p in (tmp_path / "ca").iterdir()] == [kept]


def test_a_user_intermediate_signs_chains_that_carry_it_and_verify_to_the_users_root(tmp_path):
    user = UserCa(tmp_path / "user")
    authority = user_supplied(user.cert_path, user.key_path, user.bundle_path)
    assert authority.roots == (user.root,)
    chain = issue(authority)
    leaf, *rest = x509.load_pem_x509_certificates(chain)
    assert rest == [user.intermediate]
    assert verified_path(chain, to_pem(user.root)) == [leaf, user.intermediate, user.root]
    assert not (tmp_path / "ca").exists()  # nothing made of our own


def test_issued_chains_carry_the_intermediates_up_to_the_root(tmp_path):
    """--ca-cert may hold the signing CA, then its issuers (the root itself is left out)."""
    root_key, middle_key, key = new_key(), new_key(), new_key()
    root = ca_cert("corp root", root_key)
    middle = ca_cert("corp middle", middle_key, root, root_key, path_length=1)
    signing = ca_cert("corp mesh", key, middle, middle_key, path_length=0)
    (tmp_path / "ca.pem").write_bytes(to_pem(signing, middle, root))
    (tmp_path / "key.pem").write_bytes(key_pem(key))
    (tmp_path / "key.pem").chmod(0o600)
    (tmp_path / "root.pem").write_bytes(to_pem(root))
    authority = user_supplied(tmp_path / "ca.pem", tmp_path / "key.pem", tmp_path / "root.pem")
    assert authority.intermediates == (signing, middle)
    chain = issue(authority)
    leaf, *rest = x509.load_pem_x509_certificates(chain)
    assert rest == [signing, middle]
    assert verified_path(chain, to_pem(root)) == [leaf, signing, middle, root]


def test_user_material_that_does_not_fit_is_refused_with_the_reason(tmp_path):
    user, other = UserCa(tmp_path / "user"), UserCa(tmp_path / "other", "other")
    with pytest.raises(CaError, match="the key does not belong to the certificate"):
        user_supplied(user.cert_path, other.key_path, user.bundle_path)
    with pytest.raises(CaError, match="does not chain to any root of the trust bundle; add its root"):
        user_supplied(user.cert_path, user.key_path, other.bundle_path)
    with pytest.raises(CaError, match=f"--ca-key {tmp_path / 'none'}: cannot read"):
        user_supplied(user.cert_path, tmp_path / "none", user.bundle_path)
    with pytest.raises(CaError, match="not an unencrypted PEM private key"):
        user_supplied(user.cert_path, user.cert_path, user.bundle_path)
    # the leaf where the root belongs, an easy mistake
    leaf = x509.load_pem_x509_certificates(issue(user_supplied(user.cert_path, user.key_path,
                                                               user.bundle_path)))[0]
    (tmp_path / "leaf.pem").write_bytes(to_pem(leaf))
    with pytest.raises(CaError, match="is not a CA certificate .* a trust bundle holds roots only"):
        user_supplied(user.cert_path, user.key_path, tmp_path / "leaf.pem")
    # an intermediate given as the signing CA's issuer, but in the wrong order
    with pytest.raises(CaError, match="is not issued by the next certificate of the file"):
        (tmp_path / "swapped.pem").write_bytes(to_pem(user.intermediate, other.intermediate))
        user_supplied(tmp_path / "swapped.pem", user.key_path, user.bundle_path)


def test_a_bundle_with_two_roots_verifies_chains_from_either(tmp_path):
    """Rotation, step by step: the new root joins the bundle, signing moves to it, the old
    root's chains keep verifying until it is dropped."""
    old = self_signed(tmp_path / "old")
    new = UserCa(tmp_path / "new", "new")
    old_chain = issue(old)

    # step 1: the old CA still signs; the bundle gains the new root
    both = self_signed(tmp_path / "old", extra_roots=[new.root])
    assert both.roots == (old.cert, new.root)
    assert verified_path(old_chain, both.bundle_pem)[-1] == old.cert

    # step 2: the new CA signs; the old root stays in the bundle
    switched = user_supplied(new.cert_path, new.key_path, new.bundle_path, extra_roots=[old.cert])
    assert switched.roots == (new.root, old.cert)
    new_chain = issue(switched)
    for chain, root in ((old_chain, old.cert), (new_chain, new.root)):
        assert verified_path(chain, switched.bundle_pem)[-1] == root

    # step 4: the old root dropped; what it signed no longer verifies
    final = user_supplied(new.cert_path, new.key_path, new.bundle_path)
    assert verified_path(new_chain, final.bundle_pem)[-1] == new.root
    with pytest.raises(VerificationError):
        verified_path(old_chain, final.bundle_pem)


def test_extra_roots_must_be_current_cas(tmp_path):
    leafish = x509.load_pem_x509_certificates(issue(self_signed(tmp_path / "a")))[0]
    with pytest.raises(CaError, match="--extra-trust-bundle: .* is not a CA certificate"):
        self_signed(tmp_path / "b", extra_roots=[leafish])
    expired = ca_cert("old root", new_key(), days=-1)
    with pytest.raises(CaError, match="--extra-trust-bundle: CN=old root expired on"):
        self_signed(tmp_path / "c", extra_roots=[expired])


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_root_key_open_to_group_or_others_is_refused_with_the_chmod_to_run(tmp_path, mode):
    self_signed(tmp_path)
    key = tmp_path / "ca" / "root-key.pem"
    key.chmod(mode)
    with pytest.raises(CaError) as info:
        self_signed(tmp_path)
    assert str(info.value) == (f"CA root key {key} has mode {mode:04o}: group or others may use it; "
                               f"allow only its owner: chmod 600 {key}")
    key.chmod(0o600)
    assert self_signed(tmp_path).cert  # and once it is private again, it serves


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o707, 0o770])
def test_a_ca_directory_open_to_group_or_others_is_refused_with_the_chmod_to_run(tmp_path, mode):
    self_signed(tmp_path)
    ca = tmp_path / "ca"
    ca.chmod(mode)
    with pytest.raises(CaError) as info:
        self_signed(tmp_path)
    assert str(info.value) == (f"CA directory {ca} has mode {mode:04o}: group or others may use it; "
                               f"allow only its owner: chmod 700 {ca}")
    # also before a first root is made in a directory that was there already
    for f in ca.iterdir():
        f.unlink()
    with pytest.raises(CaError, match=f"CA directory {ca} has mode"):
        self_signed(tmp_path)
    assert list(ca.iterdir()) == []  # no key was written into it


def test_a_users_ca_key_open_to_others_is_refused(tmp_path):
    user = UserCa(tmp_path / "user")
    user.key_path.chmod(0o644)
    with pytest.raises(CaError, match=f"^--ca-key {user.key_path} has mode 0644: .* "
                                      f"chmod 600 {user.key_path}$"):
        user_supplied(user.cert_path, user.key_path, user.bundle_path)
