"""textclf-serve: a checkpoint behind an HTTP server that speaks Hugging Face's text-classification protocol
(no Lightning). `protocol` reads requests, `batching` gathers them into forward passes, `answers` turns
logits into answers, `metrics` counts, `app` holds the routes and `server` runs it under uvicorn."""
