-- Every admin call through the gRPC API is audited too; the chain it belongs to, where its
-- caller sent one (W3C traceparent).
ALTER TABLE audit_log ADD COLUMN chain_id TEXT NOT NULL DEFAULT '';
