-- The journal: written by the pipeline off the tick path, read by `mtml positions|orders|pnl`
-- and by a restart. Portable SQL: the same file migrates PostgreSQL and SQLite.
CREATE TABLE decisions (
    chain_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    probability DOUBLE PRECISION NOT NULL,
    target_lots DOUBLE PRECISION NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX decisions_chain ON decisions (chain_id);

CREATE TABLE orders (
    client_order_id TEXT PRIMARY KEY,
    chain_id TEXT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    volume DOUBLE PRECISION NOT NULL,
    decision_price DOUBLE PRECISION NOT NULL,
    state TEXT NOT NULL,
    filled DOUBLE PRECISION NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE fills (
    client_order_id TEXT NOT NULL,
    chain_id TEXT NOT NULL,
    ticket BIGINT NOT NULL,
    symbol TEXT NOT NULL,
    side TEXT NOT NULL,
    volume DOUBLE PRECISION NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    time_ms BIGINT NOT NULL,
    slippage DOUBLE PRECISION NOT NULL,
    realized_pnl DOUBLE PRECISION NOT NULL
);
CREATE INDEX fills_time ON fills (time_ms);

CREATE TABLE positions (
    symbol TEXT PRIMARY KEY,
    lots DOUBLE PRECISION NOT NULL,
    average_price DOUBLE PRECISION NOT NULL,
    realized_pnl DOUBLE PRECISION NOT NULL,
    updated_ms BIGINT NOT NULL
);

CREATE TABLE state_changes (
    at_ms BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL
);
