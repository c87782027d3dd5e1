//! tantivy-ltre
