"""The download queue into the Hugging Face cache. queue: DownloadManager, the state machine and its controls;
jobs: states, records, snapshots; ledger: the jobs mirrored to the store; plan: which files a job fetches; worker:
a job's steps on daemon threads; transfer: one file over HTTP (range, hash, lock, bandwidth cap); retry: stop flag,
backoff, Retry-After; ratelimit: resuming rate-limited jobs; layout: paths and links in the cache; progress: the
speed meter and the coalesced snapshots listeners hear."""
