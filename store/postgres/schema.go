package postgres

// migrations are the catalog's schema, one step per version, as in
// store/local's catalog.go: a catalog at version v has had migrations[:v]
// applied, each in its own transaction with the update of schema_version.
// New versions are appended, never edited.
var migrations = []string{
	// 1: the streams (store/local's version 1, in PostgreSQL's types; see
	// the package doc), their chunks, and the blobs to delete.
	`CREATE TABLE streams (
		kid           BYTEA   NOT NULL PRIMARY KEY, -- SHA-256 of key
		key           BYTEA   NOT NULL,
		build_id      BYTEA   NOT NULL,
		invocation_id BYTEA   NOT NULL,
		component     INTEGER NOT NULL,
		events        BIGINT  NOT NULL,
		complete      BOOLEAN NOT NULL,
		command       BYTEA   NOT NULL,
		result        BYTEA   NOT NULL,
		exit_code     INTEGER NOT NULL,
		has_exit_code BOOLEAN NOT NULL,
		start_sec     BIGINT, start_nsec    BIGINT,
		finish_sec    BIGINT, finish_nsec   BIGINT,
		file          TEXT    NOT NULL,
		size          BIGINT  NOT NULL,
		digest        TEXT    NOT NULL,
		source        BYTEA   NOT NULL,
		format        BYTEA   NOT NULL,
		ingested_sec  BIGINT, ingested_nsec BIGINT,
		gen           TEXT    NOT NULL,
		chunks        INTEGER NOT NULL
	);
	CREATE INDEX streams_key_order ON streams ((substring(key from 1 for 256)));
	CREATE INDEX streams_invocation_id ON streams USING hash (invocation_id);
	CREATE INDEX streams_build_id ON streams USING hash (build_id);
	CREATE TABLE chunks (
		kid    BYTEA   NOT NULL REFERENCES streams(kid) ON DELETE CASCADE,
		n      INTEGER NOT NULL,
		blob   TEXT    NOT NULL,
		size   BIGINT  NOT NULL,
		events BIGINT  NOT NULL,
		PRIMARY KEY (kid, n)
	);
	CREATE TABLE garbage (
		blob  TEXT        NOT NULL,
		since TIMESTAMPTZ NOT NULL DEFAULT now()
	);
	CREATE INDEX garbage_since ON garbage(since);`,
	// 2: the facts of each stream's invocation (store.Facts), written
	// with the stream's entry and deleted with it: store/local's version
	// 2, keyed by kid. Labels are indexed by their first 512 bytes.
	`CREATE TABLE invocations (
		kid           BYTEA   NOT NULL PRIMARY KEY REFERENCES streams(kid) ON DELETE CASCADE,
		key           BYTEA   NOT NULL,
		invocation_id BYTEA   NOT NULL,
		command       TEXT    NOT NULL,
		patterns      TEXT    NOT NULL, -- a JSON array of strings
		result        TEXT    NOT NULL,
		exit_code     INTEGER NOT NULL,
		has_exit_code BOOLEAN NOT NULL,
		verdict       TEXT    NOT NULL,
		start_sec     BIGINT, start_nsec BIGINT,
		duration_ns   BIGINT  NOT NULL,
		"user"        TEXT    NOT NULL,
		host          TEXT    NOT NULL,
		commit_id     TEXT    NOT NULL,
		branch        TEXT    NOT NULL
	);
	CREATE INDEX invocations_start ON invocations(start_sec, start_nsec);
	CREATE TABLE targets (
		kid           BYTEA   NOT NULL REFERENCES streams(kid) ON DELETE CASCADE,
		label         TEXT    NOT NULL,
		kind          TEXT    NOT NULL,
		success       BOOLEAN NOT NULL,
		abort_reason  TEXT    NOT NULL,
		start_sec     BIGINT
	);
	CREATE INDEX targets_kid ON targets(kid);
	CREATE INDEX targets_label_start ON targets((substring(label from 1 for 512)), start_sec);
	CREATE TABLE tests (
		kid            BYTEA   NOT NULL REFERENCES streams(kid) ON DELETE CASCADE,
		label          TEXT    NOT NULL,
		configuration  TEXT    NOT NULL,
		status         TEXT    NOT NULL,
		attempts       INTEGER NOT NULL,
		shards         INTEGER NOT NULL,
		runs           INTEGER NOT NULL,
		total_runs     INTEGER NOT NULL,
		cached         INTEGER NOT NULL,
		duration_ns    BIGINT  NOT NULL,
		did_not_report BOOLEAN NOT NULL,
		start_sec      BIGINT
	);
	CREATE INDEX tests_kid ON tests(kid);
	CREATE INDEX tests_label_start ON tests((substring(label from 1 for 512)), start_sec);`,
	// 3: store/local's version 3 (issue 15, store/local/history.go):
	// the build's metrics and a failed attempt's test.log, and the indexes
	// of the history queries (labels by their first 512 bytes).
	`ALTER TABLE invocations ADD COLUMN actions_created BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE invocations ADD COLUMN actions_executed BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE invocations ADD COLUMN critical_path_ns BIGINT NOT NULL DEFAULT 0;
	ALTER TABLE tests ADD COLUMN failed_log TEXT NOT NULL DEFAULT '';
	CREATE INDEX invocations_commit ON invocations(commit_id) WHERE commit_id <> '';
	DROP INDEX tests_label_start;
	CREATE INDEX tests_label_start ON tests((substring(label from 1 for 512)), start_sec, status, cached);
	CREATE INDEX tests_failing ON tests(status, start_sec) WHERE status <> 'PASSED';`,
	// 4: store/local's version 4 (store/local/facts.go): what bes tests
	// and bes failures show of a stored invocation without reading its
	// stream. NULL for facts written before it: they read as none.
	`ALTER TABLE invocations ADD COLUMN failures INTEGER;
	ALTER TABLE invocations ADD COLUMN damaged BOOLEAN;
	ALTER TABLE tests ADD COLUMN kind TEXT;
	ALTER TABLE tests ADD COLUMN size TEXT;
	ALTER TABLE tests ADD COLUMN abort_reason TEXT;
	ALTER TABLE tests ADD COLUMN logs TEXT; -- a JSON array of strings`,
	// 5: store/local's version 5 (store/local/history.go): the
	// invocations by id, so that the history queries count an invocation
	// stored as several streams once (store/catalogsql).
	`CREATE INDEX invocations_invocation_id ON invocations(invocation_id);`,
	// 6: store/local's version 6 (store/local/history.go): the
	// invocation ids that the facts of several streams have, kept as
	// facts are written (facts.go, markSame), so that a history query asks
	// this small table, not the index of every invocation.
	`CREATE TABLE same_invocations (invocation_id BYTEA NOT NULL PRIMARY KEY);
	INSERT INTO same_invocations SELECT invocation_id FROM invocations GROUP BY invocation_id HAVING count(*) > 1;`,
	// 7: the labels' indexes that answer a label's summary from the index
	// alone (issue 15; store/local's version 7 does nothing: its indexes of
	// migration 3 already do). PostgreSQL does no index-only scan on an
	// expression index, so a label of at most 1,024 bytes (all but the
	// rarest; catalogsql.Dialect.LabelBytes) is indexed whole, with the
	// columns the summary reads, and a longer one by its first 512
	// characters, as before (a B-tree entry holds at most 2,704 bytes). At
	// 100,000 invocations the summary of a test's history read 80,000
	// pages of tests in 450 ms, that of a genrule 101,000 of targets in
	// 1.7 s.
	`DROP INDEX tests_label_start;
	DROP INDEX targets_label_start;
	CREATE INDEX tests_label ON tests(label, start_sec, status, cached) WHERE octet_length(label) <= 1024;
	CREATE INDEX tests_label_long ON tests((substring(label from 1 for 512)), start_sec, status, cached) WHERE octet_length(label) > 1024;
	CREATE INDEX targets_label ON targets(label, start_sec, success) WHERE octet_length(label) <= 1024;
	CREATE INDEX targets_label_long ON targets((substring(label from 1 for 512)), start_sec, success) WHERE octet_length(label) > 1024;`,
}
