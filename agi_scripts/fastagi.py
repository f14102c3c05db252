"""FastAGI server: the AGI flow without a Python start-up per call (``callproof fastagi``).

Asterisk connects to ``agi://127.0.0.1:4573/callproof`` (``AGI(agi://...)`` in the
dialplan, see ``dialplan/callproof-fastagi.conf``); several Asterisk boxes may
point at one server.  One asyncio task per connection; storage goes through the
async repositories (aiosqlite's thread), so no call blocks another.  A request
for another script name, or a malformed one, gets ``CALLPROOF_STATUS=failed``
and is closed: never a silent, hanging AGI.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from callproof import store as recordings_store
from callproof.callflow.journal_replay import JournalReplayer, journal_for
from callproof.callflow.queue_wait import QueueWatch, connect_queue_events
from callproof.callflow.reasons import Reason
from callproof.config import Config
from callproof.encryption import atrest as encryption_at_rest
from callproof.evidence import records as evidence_records
from callproof.logs import event
from callproof.metrics import MetricsService, start_metrics
from callproof.prompts import PromptCatalogue
from callproof.storage import Database, open_database

from .channel import AgiCommandError, AgiHangup, StreamChannel
from .flow import AgiFlow

log = logging.getLogger("callproof.fastagi")

SCRIPT = "callproof"


class FastAgiServer:
    def __init__(self, config: Config, *, on_flow_done: Any = None):
        self.config = config
        self.on_flow_done = on_flow_done
        self.db: Database | None = None
        self.server: asyncio.Server | None = None
        self.prompts = PromptCatalogue(
            config.prompts.directory, default_language=config.general.default_language,
            languages=config.general.languages, custom_dir=config.prompts.custom_directory)
        self._tasks: set[asyncio.Task[None]] = set()
        # calls' writes while storage is unavailable (storage/journal.py)
        self.journal = journal_for(config)
        self._replayer: JournalReplayer | None = None
        self._replaying: asyncio.Task[None] | None = None
        self.metrics: MetricsService | None = None  # [metrics] fastagi_listen: GET /metrics
        self.queue_watch: QueueWatch | None = None  # time to agent, when [ami] is configured
        self._ami: Any = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def start(self, host: str | None = None, port: int | None = None) -> FastAgiServer:
        cfg = self.config
        evidence_records.configure(cfg)  # the signing key, before any call (a bad one: KeyFileError)
        encryption_at_rest.configure(cfg)  # the public keys recordings are encrypted to (a bad one: KeyringError)
        recordings_store.configure(cfg)  # the node named in each new recording's row
        self.db = await open_database(cfg)
        await self.db.run_on_calls_connection(lambda conn: None)  # opened now, not on the first call
        self._replayer = JournalReplayer(self.db, self.journal, cfg)
        await self._replayer.replay_once()  # what a previous process could not write
        self._replaying = asyncio.ensure_future(self._replayer.run())
        self.metrics = await start_metrics(cfg, self.db, "fastagi", cfg.metrics.fastagi_listen,
                                           "metrics.fastagi_listen")
        if cfg.recording.store is not None:  # finalised recordings to the shared store, off the calls' path
            from callproof.store.mover import periodic_move
            self._tasks.add(asyncio.ensure_future(periodic_move(cfg, observe=self.metrics.process.observe_moves)))
        if cfg.ami.password:  # time to agent for the calls this server hands off (queue events)
            self.queue_watch = QueueWatch(self.db, observe=self.metrics.process.observe_agent)
            self._ami = connect_queue_events(cfg.ami.host, cfg.ami.port, cfg.ami.username, cfg.ami.password,
                                             self.queue_watch)
            ami = self._ami
            self.metrics.process.link("ami", lambda: bool(ami.authenticated))
        self.server = await asyncio.start_server(
            self._serve, host or cfg.fastagi.host, cfg.fastagi.port if port is None else port)
        event(log, "fastagi.listening", host=host or cfg.fastagi.host, port=self.port)
        return self

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._ami is not None:
            self._ami.close()
        if self.queue_watch is not None:
            await self.queue_watch.drain()
        if self.metrics is not None:
            await self.metrics.close()
        if self._replaying is not None:
            self._replaying.cancel()
            await asyncio.gather(self._replaying, return_exceptions=True)
        await asyncio.to_thread(self.journal.flush)  # every journalled write on disk before the end
        if self._replayer is not None:
            await self._replayer.replay_once()
            self._replayer.close()
        if self.db is not None:
            await self.db.close()
            self.db = None

    async def serve_forever(self) -> None:
        assert self.server is not None
        await self.server.serve_forever()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            channel = await StreamChannel.accept(reader, writer)
            script = channel.env.get("agi_network_script", "").strip("/")
            flow = AgiFlow(self.config, self.db, self.prompts, channel, journal=self.journal)
            if script != SCRIPT:
                await flow.fail(Reason.BAD_STEP, f"unknown FastAGI script {script!r}; use agi://host:port/{SCRIPT}")
            else:
                await flow.run()
            if self.metrics is not None and flow.flow is not None:
                self.metrics.process.observe_call(flow.timings)
            if self.on_flow_done is not None:
                self.on_flow_done(flow)
        except (AgiHangup, AgiCommandError, TimeoutError, ConnectionError) as exc:
            event(log, "fastagi.connection_dropped", logging.WARNING, error=f"{type(exc).__name__}: {exc}")
        except Exception:
            log.exception("FastAGI request failed")
        finally:
            self._tasks.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass


async def serve(config: Config) -> None:
    """``callproof fastagi``: run until cancelled (SIGINT/SIGTERM)."""
    server = await FastAgiServer(config).start()
    try:
        await server.serve_forever()
    finally:
        await server.stop()
