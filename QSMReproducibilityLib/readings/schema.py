"""The study database's tables (SQLite): settings, cases, observers, readings, reading order, audit log.

The tables of cases registered with their GRE to be reconstructed later are in :mod:`.inputs`
(``INPUTS_SCHEMA``), created with the study (and added when an older study is opened).
"""

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE cases (
    case_id       TEXT PRIMARY KEY,
    lesion_type   TEXT NOT NULL CHECK (lesion_type IN ('hematoma', 'calcification')),
    diagnosis     TEXT,
    patient_name  TEXT,
    qsm_file      TEXT NOT NULL,
    qsm_sha256    TEXT NOT NULL,
    mask_file     TEXT,
    mask_sha256   TEXT,
    gre_reference TEXT,
    added_at      TEXT NOT NULL
);
CREATE TABLE observers (
    observer_id TEXT PRIMARY KEY,
    added_at    TEXT NOT NULL
);
CREATE TABLE readings (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    session_uid         TEXT NOT NULL UNIQUE,
    case_id             TEXT NOT NULL REFERENCES cases(case_id),
    observer_id         TEXT NOT NULL REFERENCES observers(observer_id),
    reading             INTEGER NOT NULL CHECK (reading >= 1),
    status              TEXT NOT NULL CHECK (status IN ('started', 'finished', 'amended')),
    started_at          TEXT NOT NULL,
    finished_at         TEXT,
    segmentation_file   TEXT NOT NULL UNIQUE,
    checksum            TEXT,
    imported            INTEGER NOT NULL DEFAULT 0,
    amends              INTEGER REFERENCES readings(id),
    amend_reason        TEXT,
    washout_override    TEXT
);
-- one original reading per (case, observer, number); one current version; one open session
CREATE UNIQUE INDEX readings_original ON readings(case_id, observer_id, reading) WHERE amends IS NULL;
CREATE UNIQUE INDEX readings_current ON readings(case_id, observer_id, reading) WHERE status = 'finished';
CREATE UNIQUE INDEX readings_open ON readings(case_id, observer_id) WHERE status = 'started';
CREATE TABLE reading_order (
    observer_id TEXT NOT NULL REFERENCES observers(observer_id),
    round       INTEGER NOT NULL,
    position    INTEGER NOT NULL,
    case_id     TEXT NOT NULL REFERENCES cases(case_id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (observer_id, round, position),
    UNIQUE (observer_id, round, case_id)
);
CREATE TABLE audit_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          TEXT NOT NULL,
    action      TEXT NOT NULL,
    observer_id TEXT,
    case_id     TEXT,
    reading     INTEGER,
    session_uid TEXT,
    reason      TEXT,
    details     TEXT
);
"""
