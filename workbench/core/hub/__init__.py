"""The Hugging Face hub: the catalog (client: search, details; fit: memory verdicts; errors: failures in words;
curated: catalog.toml; names: checks on the names the hub gives), the local cache (cache: listing, deletion,
partial files) and the download queue (downloads/)."""
