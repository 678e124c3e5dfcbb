// placeholder: Kafka mock runner (being written)
