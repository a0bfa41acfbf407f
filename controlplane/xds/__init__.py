"""xDS: stock gRPC clients in any language discover services and follow traffic policies through ADS."""
