-- The W3C traceparent of the call that submitted each accepted envelope: handed on with its
-- deliveries, so a recipient's next call continues the same trace.
ALTER TABLE envelopes ADD COLUMN traceparent TEXT;
