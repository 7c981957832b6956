-- Every operator command (Telegram, and later every admin call): who, what, when, how it ended.
CREATE TABLE audit_log (
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
