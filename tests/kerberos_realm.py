"""A throwaway MIT Kerberos realm on loopback for the Kerberos tests: a real KDC (krb5kdc), its
database, principals and keytabs, built by k5test in a temporary folder.

The KDC listens on 127.0.0.1 only; `krb5_config` is a krb5.conf naming it (no DNS lookups, no
reverse DNS), handed to clients through KRB5_CONFIG. The host's own /etc/krb5.conf is never read
by what the tests start: `env` is all a client needs.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

REALM = "CORP.EXAMPLE.COM"
PROVIDER_HOST = "cm01.corp.example.com"

_FAKETIME = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)

# Debian's krb5-kdc and krb5-admin-server put these in /usr/sbin (not in a user's PATH).
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def kdc_binary() -> str | None:
    return shutil.which("krb5kdc", path=os.pathsep.join([os.environ.get("PATH", ""), *_SBIN]))


def _free_port_pair() -> int:
    """A port p with p+1 free too (k5test names kadmind's port after the KDC's)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < 65000:
            return port
    raise RuntimeError("no free port")


class Realm:
    """The realm CORP.EXAMPLE.COM with a KDC on 127.0.0.1; stop() ends the KDC and removes it all."""

    def __init__(self, *, max_life: str = "10h") -> None:
        from k5test import K5Realm

        port = _free_port_pair()
        kdc = f"127.0.0.1:{port}"
        self.port = port
        self._realm = K5Realm(
            realm=REALM, portbase=port, create_user=False, create_host=False, get_creds=False, start_kdc=False,
            krb5_conf={
                "libdefaults": {
                    "default_realm": REALM, "dns_lookup_kdc": "false", "dns_lookup_realm": "false",
                    "rdns": "false", "dns_canonicalize_hostname": "false", "udp_preference_limit": "1",
                    "renew_lifetime": "0",
                },
                "realms": {"$realm": {"kdc": kdc, "admin_server": f"127.0.0.1:{port + 1}"}},
                "domain_realm": {".corp.example.com": REALM, "localhost": REALM, "127.0.0.1": REALM},
            },
            kdc_conf={"realms": {"$realm": {"kdc_listen": kdc, "kdc_tcp_listen": kdc, "max_life": max_life}}},
        )
        self.dir = Path(self._realm.tmpdir)
        self.krb5_config = str(self.dir / "krb5.conf")
        self._realm.start_kdc()

    @property
    def env(self) -> dict[str, str]:
        """What a client needs: this realm's krb5.conf, and no ticket cache of the host's."""
        return {"KRB5_CONFIG": self.krb5_config, "KRB5CCNAME": f"FILE:{self.dir / 'no-such-ccache'}"}

    def principal(self, name: str) -> str:
        return name if "@" in name else f"{name}@{REALM}"

    def add_user(self, name: str, password: str, *, max_life: str | None = None,
                 requires_preauth: bool = False) -> str:
        """A user principal; `max_life` (a kadmin duration such as "1 minute") caps its tickets;
        `requires_preauth` makes the KDC check the client's timestamp (as Active Directory does)."""
        principal = self.principal(name)
        options = [*(["-maxlife", max_life] if max_life else []), *(["+requires_preauth"] if requires_preauth else [])]
        self._kadmin(["addprinc", "-pw", password, *options, principal])
        return principal

    def add_service(self, spn: str, keytab: str | None = None) -> str:
        """A service principal with a random key, added to `keytab` (a new file by default); returns
        the keytab's path. The keys of a provider's computer account, as the server holds them."""
        principal = self.principal(spn)
        self._kadmin(["addprinc", "-randkey", principal])
        path = keytab or str(self.dir / (spn.replace("/", "_") + ".keytab"))
        self._kadmin(["ktadd", "-k", path, principal])
        return path

    def client_keytab(self, name: str) -> str:
        """A keytab with the user's current keys (kvno kept: -norandkey), as `ktpass` exports one."""
        principal = self.principal(name)
        keytab = self.dir / (name.replace("/", "_") + ".client.keytab")
        self._kadmin(["ktadd", "-k", str(keytab), "-norandkey", principal])
        return str(keytab)

    def change_password(self, name: str, password: str) -> None:
        self._kadmin(["cpw", "-pw", password, self.principal(name)])

    def delete(self, name: str) -> None:
        self._kadmin(["delprinc", "-force", self.principal(name)])

    def kinit(self, name: str, password: str, ccache: str, lifetime: str | None = None) -> None:
        """A ticket in `ccache` as a user's `kinit` leaves it."""
        args = ["kinit", *(["-l", lifetime] if lifetime else []), "-c", ccache, self.principal(name)]
        subprocess.run(args, input=password + "\n", text=True, env={**os.environ, **self.env}, check=True,
                       capture_output=True, timeout=30)

    @contextlib.contextmanager
    def kdc_clock(self, offset: str) -> Iterator[None]:
        """Run the KDC with its clock moved by `offset` (libfaketime, such as "+1h") for a while."""
        library = next((path for path in _FAKETIME if os.path.exists(path)), None)
        if library is None:
            raise RuntimeError("libfaketime is not installed (Debian: libfaketime)")
        self._realm.stop_kdc()
        self._realm.start_kdc(env={**self._realm.env, "LD_PRELOAD": library, "FAKETIME": offset})
        try:
            yield
        finally:
            self._realm.stop_kdc()
            self._realm.start_kdc()

    def stop(self) -> None:
        self._realm.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kadmin(self, args: list[str]) -> None:
        # kadmin.local's -q takes one line and splits it itself (double quotes group words; no
        # shell quoting), so the arguments here are plain words or simple phrases.
        if any('"' in arg or "'" in arg or "\\" in arg for arg in args):
            raise ValueError("kadmin arguments cannot hold quotes or backslashes")
        self._realm.run_kadminl(" ".join(f'"{arg}"' if " " in arg else arg for arg in args))
