payload
