-- Every host a session's sprite asked the egress proxy for, allowed or
-- refused, with how often and when (host "*", port 0: the overflow row
-- once a session has MaxEgressHosts distinct entries).
CREATE TABLE session_egress (
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    host       TEXT NOT NULL,
    port       INTEGER NOT NULL,
    allowed    INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    first_at   TEXT NOT NULL,
    last_at    TEXT NOT NULL,
    PRIMARY KEY (session_id, host, port, allowed)
);
