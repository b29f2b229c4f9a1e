"""Private Dovecot and Postfix instances for tests (recipes: ../shared/research/realparts.md §2, §3, §5).

Each lives in its own folder under /tmp (0755: the dovecot and nobody users must traverse it), on free
loopback ports, and is stopped in `finally`. Only the processes these helpers started are signalled.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import free_port

DOVECOT_USERS = [f"bot{i}@example.org" for i in range(1, 31)]
DOVECOT_PASSWORD = "secret"


@dataclass
class Dovecot:
    root: Path
    imap_port: int
    conf: Path
    proc: subprocess.Popen[bytes]
    free_users: list[str] = field(default_factory=lambda: list(DOVECOT_USERS))

    def take_user(self) -> str:
        return self.free_users.pop(0)


def _banner(port: int, prefix: bytes, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                if s.recv(200).startswith(prefix):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


DOVECOT_CONF = """
instance_name = wgbot-test-{imap}
base_dir = {root}/run
state_dir = {root}/state
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
log_path = {root}/log/dovecot.log
mail_location = maildir:~/Maildir
mail_uid = nobody
mail_gid = nogroup
mailbox_idle_check_interval = 1 secs
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/users
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/users
  default_fields = home={root}/mail/%d/%n
}}
namespace inbox {{
  inbox = yes
  separator = /
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
auth_failure_delay = 0
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


@contextmanager
def dovecot(extra: str = "") -> Iterator[Dovecot]:
    root = Path(tempfile.mkdtemp(prefix="wgbot-dovecot-", dir="/tmp"))
    root.chmod(0o755)
    for sub in ("run", "state", "log", "mail"):
        (root / sub).mkdir()
    shutil.chown(root / "mail", "nobody", "nogroup")
    (root / "users").write_text("".join(f"{u}:{{PLAIN}}{DOVECOT_PASSWORD}::::::\n" for u in DOVECOT_USERS))
    proc = None
    try:
        for _ in range(3):
            port = free_port()
            conf = root / "dovecot.conf"
            conf.write_text(DOVECOT_CONF.format(root=root, imap=port) + extra)
            proc = subprocess.Popen(["dovecot", "-c", str(conf), "-F"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, start_new_session=True)
            if _banner(port, b"* OK"):
                break
            proc.kill()
            proc.wait()
            proc = None
        if proc is None:
            raise RuntimeError(f"Dovecot did not start; see {root}/log/dovecot.log")
        yield Dovecot(root, port, conf, proc)
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stderr:
                proc.stderr.close()
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class Postfix:
    root: Path
    smtp_port: int

    def log(self) -> str:
        path = self.root / "log/maillog"
        return path.read_text() if path.exists() else ""

    def queue_empty(self) -> bool:
        out = subprocess.run(["postqueue", "-c", str(self.root / "etc"), "-p"], capture_output=True, text=True)
        return "Mail queue is empty" in out.stdout


MAIN_CF = """
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.test.example
mydomain = test.example
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_peername_lookup = no
disable_dns_lookups = yes
smtp_dns_support_level = disabled
relay_domains = {domain}
transport_maps = inline:{{ {domain}={transport} }}
relayhost = [127.0.0.1]:{sink}
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
maillog_file = {root}/log/maillog
maillog_file_prefixes = {root}
compatibility_level = 3.6
smtputf8_enable = no
lmtp_data_done_timeout = 30s
"""

MASTER_CF = """
{port}    inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@contextmanager
def postfix(domain: str, transport: str, sink_port: int) -> Iterator[Postfix]:
    """A private Postfix on a free port: mail for `domain` goes to `transport` (e.g. lmtp:[127.0.0.1]:PORT)."""
    root = Path(tempfile.mkdtemp(prefix="wgbot-postfix-", dir="/tmp"))
    root.chmod(0o755)
    for sub in ("etc", "queue", "data", "log"):
        (root / sub).mkdir()
    shutil.chown(root / "data", "postfix")
    started = False
    try:
        for _ in range(3):
            port = free_port()
            (root / "etc/main.cf").write_text(MAIN_CF.format(root=root, domain=domain, transport=transport,
                                                              sink=sink_port))
            (root / "etc/master.cf").write_text(MASTER_CF.format(port=f"127.0.0.1:{port}"))
            subprocess.run(["postfix", "-c", str(root / "etc"), "check"], check=True, capture_output=True)
            done = subprocess.run(["postfix", "-c", str(root / "etc"), "start"], capture_output=True)
            if done.returncode == 0 and _banner(port, b"220 "):
                started = True
                break
            subprocess.run(["postfix", "-c", str(root / "etc"), "stop"], capture_output=True)
        if not started:
            raise RuntimeError(f"Postfix did not start: {(root / 'log/maillog').read_text(errors='replace')}")
        yield Postfix(root, port)
    finally:
        if started:
            subprocess.run(["postfix", "-c", str(root / "etc"), "stop"], capture_output=True)
            pidfile = root / "queue/pid/master.pid"
            deadline = time.monotonic() + 10
            while pidfile.exists() and time.monotonic() < deadline:
                try:
                    os.kill(int(pidfile.read_text().strip()), 0)
                except (ProcessLookupError, ValueError):
                    break
                time.sleep(0.05)
        shutil.rmtree(root, ignore_errors=True)


def have(program: str) -> bool:
    return shutil.which(program) is not None and os.geteuid() == 0
