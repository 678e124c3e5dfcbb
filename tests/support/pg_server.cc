// placeholder: PostgreSQL test server (being written)
