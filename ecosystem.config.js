// PM2 ecosystem: a validator, a miner and the auto-updater on a real network (docs/operators.md, "PM2").
//   pm2 start ecosystem.config.js                      # all three
//   pm2 start ecosystem.config.js --only deai-miner,deai-auto-update
//   pm2 logs deai-miner; pm2 save; pm2 startup         # logs; restart them at boot
// Set the values below for your machine. The commands are the ones docs/operators.md shows
// (tests/test_deployment_files.py checks that they stay equal).
const NETUID = "1"; // the subnet's netuid on NETWORK (btcli subnets list --network finney)
const NETWORK = "finney"; // finney (mainnet) or test (testnet)
const EXTERNAL_IP = "203.0.113.10"; // this machine's public IP (curl -4 ifconfig.me); validators call it
const PRESET = "124m"; // the subnet's model preset (min_compute.yml says which GPU each needs)

module.exports = {
  apps: [
    {
      name: "deai-validator",
      script: ".venv/bin/python",
      interpreter: "none",
      args: `-m neurons.validator --netuid ${NETUID} --subtensor.network ${NETWORK} --wallet.name validator --wallet.hotkey default --axon.port 8091 --axon.external_ip ${EXTERNAL_IP} --data.preset ${PRESET} --neuron.device cuda`,
      cwd: __dirname,
      autorestart: true,
      max_restarts: 50,
      restart_delay: 10000,
      kill_timeout: 30000,
    },
    {
      name: "deai-miner",
      script: ".venv/bin/python",
      interpreter: "none",
      args: `-m neurons.miner --netuid ${NETUID} --subtensor.network ${NETWORK} --wallet.name miner --wallet.hotkey default --axon.port 8092 --axon.external_ip ${EXTERNAL_IP} --data.preset ${PRESET} --neuron.device cuda`,
      cwd: __dirname,
      autorestart: true,
      max_restarts: 50,
      restart_delay: 10000,
      kill_timeout: 30000,
    },
    {
      name: "deai-auto-update",
      script: "scripts/auto_update.sh",
      interpreter: "bash",
      args: "--every 600",
      cwd: __dirname,
      autorestart: true,
    },
  ],
};
