// Sends events to Beacon with the official Segment Node.js library.
// Usage: node send.mjs <host> <writeKey> <count>
import { Analytics } from '@segment/analytics-node'

const [host, writeKey, countArg] = process.argv.slice(2)
const count = Number(countArg)
const analytics = new Analytics({ writeKey, host, maxEventsInBatch: 15, flushInterval: 50, maxRetries: 3 })
const errors = []
analytics.on('error', (err) => errors.push(String(err?.reason ?? err?.message ?? err)))

analytics.identify({ userId: 'node-user', traits: { email: 'node@example.com', plan: 'pro' } })
analytics.page({ anonymousId: 'node-anon', name: 'Checkout', properties: { url: 'https://shop.example/checkout' } })
for (let i = 0; i < count; i++) {
  analytics.track({
    userId: 'node-user',
    event: 'Order Completed',
    messageId: `node-order-${i}`,
    timestamp: new Date(Date.UTC(2025, 5, 1, 12, 0, i)),
    properties: { order_id: `n-${i}`, revenue: 10.25 + i, currency: 'usd', products: [{ product_id: 'p1', price: 10.25 }] },
  })
}
await analytics.closeAndFlush({ timeout: 20000 })
if (errors.length) {
  console.error(JSON.stringify(errors))
  process.exit(1)
}
console.log('sent')
