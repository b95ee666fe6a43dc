"""evi producers: read video sources, encode JPEG, publish frames to Kafka (`evi produce`)."""
