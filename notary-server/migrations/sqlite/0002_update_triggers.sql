-- An update is one multi-row INSERT (one round trip to SQLite's worker thread): the
-- version rule and the changefeed row are enforced here, inside that statement.
-- A version equal to or below a stored one for the same (gun, role) aborts the whole
-- statement; storing a timestamp appends its changefeed row.
CREATE TRIGGER IF NOT EXISTS tuf_files_version_increases
BEFORE INSERT ON tuf_files
WHEN EXISTS (
    SELECT 1 FROM tuf_files
    WHERE gun = NEW.gun AND role = NEW.role AND version >= NEW.version
)
BEGIN
    SELECT RAISE(ABORT, 'notary: version conflict');
END;

CREATE TRIGGER IF NOT EXISTS tuf_files_changefeed
AFTER INSERT ON tuf_files
WHEN NEW.role = 'timestamp'
BEGIN
    INSERT INTO changefeed (created_at, gun, version, sha256, category)
    VALUES (NEW.created_at, NEW.gun, NEW.version, NEW.sha256, 'update');
END;
