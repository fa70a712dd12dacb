"""A local CA and a server certificate for 127.0.0.1/localhost (for the sandbox's HTTPS port).

Made with trustme into the state directory and reused on the next start, so a client configured
with the CA bundle (state/sandbox/ca.pem) keeps working across restarts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["CertPaths", "ensure_certs"]


@dataclass(frozen=True)
class CertPaths:
    ca_bundle: Path
    cert_chain: Path
    private_key: Path


def ensure_certs(state_dir: Path) -> CertPaths:
    state_dir.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(state_dir / "ca.pem", state_dir / "server-cert.pem", state_dir / "server-key.pem")
    if all(p.is_file() and p.stat().st_size > 0 for p in (paths.ca_bundle, paths.cert_chain, paths.private_key)):
        return paths
    ca = trustme.CA(organization_name="PeopleBooster incident sandbox", organization_unit_name="local CA")
    cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
    cert.private_key_pem.write_to_path(str(paths.private_key))
    os.chmod(paths.private_key, 0o600)
    for index, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(paths.cert_chain), append=index > 0)
    ca.cert_pem.write_to_path(str(paths.ca_bundle))
    return paths
