"""HTML reports and CI gates rendered from result records: they read results, never measure. Installed as
`nvila_bench.reports`."""
