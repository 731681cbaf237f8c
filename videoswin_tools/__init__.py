"""The tools around conversion: the convert/parity command line, model-zoo generation, Hub
publishing with its model card, and video prediction. They sit on top of `converter` and
`videoswin`; nothing below imports them."""
