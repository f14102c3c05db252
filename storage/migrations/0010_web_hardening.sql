-- callproof storage: the web findings of the security review (docs/security.md).
--
-- * request_deliveries.redacted_body: the link SMS text with its download token
--   replaced by "[redacted]", written with the delivery.  Once the outbox sender
--   marks the SMS sent, a trigger puts it in sms_outbox.body, so a copy of the
--   database holds no usable link for an SMS already delivered.  NULL for
--   deliveries made before this version (their bodies keep the token).
-- * web_login_failures: counted per account and client address, and per address
--   (storage/webauth.py), so indexes on both.

ALTER TABLE request_deliveries ADD COLUMN redacted_body TEXT;
CREATE INDEX request_deliveries_outbox ON request_deliveries (outbox_id) WHERE outbox_id IS NOT NULL;

CREATE TRIGGER sms_outbox_redact_link_once_sent
AFTER UPDATE OF state ON sms_outbox
WHEN NEW.state = 'sent' AND OLD.state <> 'sent'
BEGIN
    UPDATE sms_outbox
       SET body = (SELECT d.redacted_body FROM request_deliveries d
                    WHERE d.outbox_id = NEW.id AND d.redacted_body IS NOT NULL)
     WHERE id = NEW.id
       AND EXISTS (SELECT 1 FROM request_deliveries d
                    WHERE d.outbox_id = NEW.id AND d.redacted_body IS NOT NULL);
END;

CREATE INDEX web_login_failures_pair ON web_login_failures (username, remote, at);
CREATE INDEX web_login_failures_remote ON web_login_failures (remote, at);
