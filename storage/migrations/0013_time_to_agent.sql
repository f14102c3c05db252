-- callproof storage: time to agent (issue 15).
--
-- What happened after the hand-off, from Asterisk's queue events (AMI QueueCallerJoin,
-- AgentConnect, QueueCallerAbandon; callproof/callflow/queue_wait.py), matched to the
-- call by its channel's uniqueid:
--   * queue_name         the queue the caller waited in (the first one joined)
--   * queue_joined_at    when the caller joined it
--   * agent_answered_at  when an agent answered (the caller was connected)
--   * queue_abandoned_at when the caller hung up while still waiting
-- Each is written once (the first event wins; two processes watching one Asterisk agree).
-- The wait to an agent is agent_answered_at - handed_off_at.

ALTER TABLE calls ADD COLUMN queue_name TEXT;
ALTER TABLE calls ADD COLUMN queue_joined_at TEXT;
ALTER TABLE calls ADD COLUMN agent_answered_at TEXT;
ALTER TABLE calls ADD COLUMN queue_abandoned_at TEXT;
CREATE INDEX calls_agent_answered ON calls (agent_answered_at) WHERE agent_answered_at IS NOT NULL;
