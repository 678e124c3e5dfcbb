-- HOT step results (issue 7): a step's row is inserted RUNNING and updated
-- once with its result. The update changes no indexed column, so PostgreSQL
-- can write it in place (HOT: no new index entries, less WAL) if the row's
-- page has room; at the default fillfactor 100 the pages are full of newer
-- rows by then and almost no result update is HOT. 70 leaves room for a
-- result the size of its row's input; bigger results are stored as before.
-- Applies to pages written from now on.
ALTER TABLE step_executions SET (fillfactor = 70);
