"""A local RFC 3161 time-stamping authority for the tests, built with ``openssl``.

A throw-away CA and a TSA certificate (extendedKeyUsage timeStamping, critical) in a
temporary folder; an aiohttp server (its own thread and loop) answers
``application/timestamp-query`` POSTs by running ``openssl ts -reply`` with a fixed
argument list. ``requests`` counts the queries it answered.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import threading
from pathlib import Path

from aiohttp import web

_TSA_CNF = """
[ tsa ]
default_tsa = tsa_config1
[ tsa_config1 ]
dir = {dir}
serial = $dir/serial
crypto_device = builtin
signer_cert = $dir/tsa.crt
certs = $dir/tsa.crt
signer_key = $dir/tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
[ ext_tsa ]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ ext_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
"""


def _run(*args: str, cwd: Path) -> bytes:
    return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True).stdout


def make_tsa_files(folder: Path) -> Path:
    """CA + TSA key/certificate under ``folder``; returns the CA certificate's path."""
    (folder / "tsa.cnf").write_text(_TSA_CNF.format(dir=folder))
    (folder / "serial").write_text("01\n")
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
         "-subj", "/CN=callproof test CA", "-keyout", "ca.key", "-out", "ca.crt",
         "-config", "tsa.cnf", "-extensions", "ext_ca", cwd=folder)
    _run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=callproof test TSA",
         "-keyout", "tsa.key", "-out", "tsa.csr", cwd=folder)
    _run("x509", "-req", "-in", "tsa.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
         "-extfile", "tsa.cnf", "-extensions", "ext_tsa", "-out", "tsa.crt", cwd=folder)
    return folder / "ca.crt"


class LocalTsa:
    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="callproof-test-tsa-")
        self.dir = Path(self._tmp.name)
        self.ca_file = make_tsa_files(self.dir)
        self.requests = 0
        self.url = ""
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._lock = threading.Lock()

    async def _reply(self, request: web.Request) -> web.Response:
        if request.content_type != "application/timestamp-query":
            return web.Response(status=415)
        body = await request.read()
        with self._lock:
            n = self.requests = self.requests + 1
            q = self.dir / f"q{n}.tsq"
            q.write_bytes(body)
            out = await asyncio.to_thread(
                subprocess.run, ["openssl", "ts", "-reply", "-config", str(self.dir / "tsa.cnf"),
                                 "-queryfile", str(q), "-out", str(self.dir / f"r{n}.tsr")],
                capture_output=True, check=False)
        if out.returncode != 0:
            return web.Response(status=500, text=out.stderr.decode(errors="replace"))
        return web.Response(body=(self.dir / f"r{n}.tsr").read_bytes(), content_type="application/timestamp-reply")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/", self._reply)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/"

    def __enter__(self) -> LocalTsa:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._tmp.cleanup()
