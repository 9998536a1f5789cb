"""Processing: the inputs (`inputs`), the analyses (`analysis/`), result documents and their public
views (`results`), the data-quality documents and the process job (`job`)."""
