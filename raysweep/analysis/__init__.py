"""From stored points to numbers: curve metrics, aggregation (Polars), MDS maps, the papers' toys."""
