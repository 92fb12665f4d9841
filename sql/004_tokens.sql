-- greedylr schema, version 4: API tokens.

-- One row per token that may use the API. Only the SHA-256 of a token is kept: the token
-- itself is shown once, when it is created, and cannot be read back from here. role is
-- what the token may do; name is how operators list and revoke it.
CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    role       TEXT NOT NULL CHECK (role IN ('admin', 'writer', 'reader')),
    hash       BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    created_ms INTEGER NOT NULL
) WITHOUT ROWID;
