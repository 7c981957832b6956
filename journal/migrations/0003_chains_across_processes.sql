-- Chains across processes: a span says which process recorded it (service) and when it started
-- on the wall clock (UTC epoch ns), so the spans a bridge and a pipeline record on two hosts line
-- up in one chain. Offsets are computed when read, from the chain's first span.
ALTER TABLE chain_spans ADD COLUMN service TEXT NOT NULL DEFAULT 'mtml';
ALTER TABLE chain_spans ADD COLUMN start_unix_ns BIGINT NOT NULL DEFAULT 0;
UPDATE chain_spans SET start_unix_ns = recorded_ms * 1000000 + offset_ns;
ALTER TABLE chain_spans DROP COLUMN offset_ns;
