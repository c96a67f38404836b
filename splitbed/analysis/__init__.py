"""Results: the request CSV's schema (one definition for writer, reader and README) and summaries."""
