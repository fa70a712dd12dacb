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


def ensure_certs(state_dir: Path, extra_hosts: list[str] | tuple[str, ...] = ()) -> CertPaths:
    """`extra_hosts`: more names the certificate must cover (the sandbox's public host in a container)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(state_dir / "ca.pem", state_dir / "server-cert.pem", state_dir / "server-key.pem")
    hosts = ["127.0.0.1", "localhost", "::1", *(h for h in extra_hosts if h not in ("127.0.0.1", "localhost", "::1"))]
    hosts_file = state_dir / "server-cert.hosts"
    recorded = hosts_file.read_text().split() if hosts_file.is_file() else ["127.0.0.1", "localhost", "::1"]
    if (all(p.is_file() and p.stat().st_size > 0 for p in (paths.ca_bundle, paths.cert_chain, paths.private_key))
            and set(hosts) <= set(recorded)):
        return paths
    ca = trustme.CA(organization_name="PeopleBooster incident sandbox", organization_unit_name="local CA")
    cert = ca.issue_cert(*hosts)
    cert.private_key_pem.write_to_path(str(paths.private_key))
    os.chmod(paths.private_key, 0o600)
    for index, blob in enumerate(cert.cert_chain_pems):
        blob.write_to_path(str(paths.cert_chain), append=index > 0)
    ca.cert_pem.write_to_path(str(paths.ca_bundle))
    hosts_file.write_text(" ".join(hosts) + "\n")
    return paths
