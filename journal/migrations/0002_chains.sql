-- Chain history: the spans of every chain that led to an order, a rejection or an error, whole,
-- written off the tick path in batches. Offsets are from the chain's first span (one process's
-- monotonic clock); outcome is `ok`, `rejected: REASON` or `error: WHAT`.
CREATE TABLE chain_spans (
    chain_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    stage TEXT NOT NULL,
    offset_ns BIGINT NOT NULL,
    duration_ns BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    recorded_ms BIGINT NOT NULL
);
CREATE INDEX chain_spans_chain ON chain_spans (chain_id);
CREATE INDEX chain_spans_recorded ON chain_spans (recorded_ms);
