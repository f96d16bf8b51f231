"""`textclf-predict`: a checkpoint's predictions for a file of texts, written chunk by chunk
(`textclf.inference.prediction`)."""

from __future__ import annotations

from textclf.inference.prediction import predict
from textclf.running import command_main

main = command_main(predict, "predict")

if __name__ == "__main__":
    main()
