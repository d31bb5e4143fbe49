"""The PostgreSQL backend: many workers on many machines share one database.

A package split by concern (docs/storage-postgres.md has a paragraph on each module):
`connection` (the pool, transactions, driver errors at the boundary), `clock` (the
server's clock), `wakeups` (LISTEN/NOTIFY), `inserts`, `claims` (and commits), `admin`
(updates, timeouts, pruning), `leases`, `reads` (processes and history), `queues`,
`workers` (the worker registry), `schema` (migrations), `values` (arguments and rows), and
`storage`, which puts them together. The SQL lives in
`sql/postgres/queries.sql`; the schema in the numbered migrations beside it.
"""

from corral.storage.postgres.storage import PostgresStorage

__all__ = ["PostgresStorage"]
