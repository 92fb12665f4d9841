-- greedylr schema, version 9: the models learned for families of runs.

-- Each model learned for a family, numbered from 1 in the family: its parameters (JSON,
-- what a "learned" job's config carries), the jobs it was trained on (a JSON array of
-- ids) and what the fit read of them (JSON). A model is never changed: learning again
-- makes the next version, and a job keeps the version it was created with.
CREATE TABLE models (
    family     TEXT NOT NULL,
    version    INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    model      TEXT NOT NULL,
    trained_on TEXT NOT NULL,
    fit        TEXT NOT NULL,
    PRIMARY KEY (family, version)
) WITHOUT ROWID;
