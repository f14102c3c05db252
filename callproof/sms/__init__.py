"""Protocol SMS: message text, sender backends and the outbox sender task."""

from .backends import LogBackend, SendResult, SmsBackend, make_backend, make_sender
from .sender import OutboxSender
from .text import render_sms

__all__ = ["LogBackend", "OutboxSender", "SendResult", "SmsBackend", "make_backend", "make_sender", "render_sms"]
