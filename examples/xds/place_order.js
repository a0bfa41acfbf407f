// Place an order with a stock Node gRPC client: @grpc/grpc-js, @grpc/grpc-js-xds, @grpc/proto-loader and the
// demo's .proto files, nothing of this project.
//
//   GRPC_XDS_BOOTSTRAP_CONFIG="$(.venv/bin/controlplane xds bootstrap --node-id node-shopper)" \
//     NODE_PATH=tools/node-xds/node_modules node examples/xds/place_order.js alice apple 2
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
require('@grpc/grpc-js-xds').register();

const protos = path.resolve(__dirname, '..', '..', 'protos');
const definition = protoLoader.loadSync('demo/order/v1/order.proto', {includeDirs: [protos], keepCase: true,
  enums: String, defaults: true});
const {OrderService} = grpc.loadPackageDefinition(definition).demo.order.v1;

const [user = 'alice', sku = 'apple', quantity = '1'] = process.argv.slice(2);
const orders = new OrderService('xds:///order', grpc.credentials.createInsecure());
const deadline = () => ({deadline: Date.now() + 10000, waitForReady: true});
const call = (method, request) => new Promise((resolve, reject) =>
  orders[method](request, deadline(), (error, reply) => (error ? reject(error) : resolve(reply))));

async function main() {
  const placed = await call('CreateOrder',
      {user_id: user, items: [{sku, quantity: Number(quantity), unit_price_cents: 150}]});
  let order = placed.order;
  for (let i = 0; i < 200 && order.status === 'ORDER_STATUS_PENDING'; i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    order = (await call('GetOrder', {order_id: order.order_id})).order;
  }
  console.log(`order ${order.order_id}: ${order.status} (saga ${placed.saga_id})`);
  orders.close();
  // The xDS client's stream to the control plane lives as long as the process: end it explicitly.
  process.exit(order.status === 'ORDER_STATUS_PENDING' ? 1 : 0);
}

main().catch((error) => { console.error(error.message); process.exit(1); });
