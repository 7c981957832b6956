-- Rollout: which version of a model is the champion (acted on) and which, if any, the challenger
-- (shadow: computed and recorded, never acted on; canary: acted on for a share of chains), and
-- every change to that, in order. `revision` counts the changes of one model; readers that poll
-- compare it. Portable SQL, as 0001.
CREATE TABLE model_rollouts (
    name TEXT NOT NULL PRIMARY KEY,
    champion BIGINT,
    challenger BIGINT,
    route TEXT NOT NULL,
    percent BIGINT NOT NULL,
    symbols TEXT NOT NULL,
    revision BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
-- One row per change; (name, seq) is the key, so two operators changing one model at once
-- cannot both succeed on the same revision.
CREATE TABLE model_events (
    name TEXT NOT NULL,
    seq BIGINT NOT NULL,
    action TEXT NOT NULL,
    version BIGINT NOT NULL,
    previous BIGINT,
    detail TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    actor TEXT NOT NULL,
    undone BIGINT NOT NULL,
    PRIMARY KEY (name, seq)
);
