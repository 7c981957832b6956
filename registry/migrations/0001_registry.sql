-- The model registry. Portable SQL: the same file migrates PostgreSQL and SQLite (where BYTEA
-- is a column of BLOB values).
CREATE TABLE model_versions (
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    sha256 TEXT NOT NULL,
    size_bytes BIGINT NOT NULL,
    input_name TEXT NOT NULL,
    features BIGINT NOT NULL,
    output_name TEXT NOT NULL,
    feature_set TEXT NOT NULL,
    metrics TEXT NOT NULL,
    uploaded_by TEXT NOT NULL,
    uploaded_ms BIGINT NOT NULL,
    state TEXT NOT NULL,
    onnx BYTEA NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE UNIQUE INDEX model_versions_checksum ON model_versions (name, sha256);
