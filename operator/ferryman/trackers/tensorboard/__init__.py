"""TensorBoard log directories: the source (`reader`, decoding summaries in `events` over the TFRecord
framing in `tfrecord`) and the destination (`writer`)."""
