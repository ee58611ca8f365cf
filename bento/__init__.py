"""BentoML serving for b3quant-ml (imports the library, never the reverse). See docs/serving.md."""
