# The agent's image for the Helm chart: greenai on PATH, nothing else.
# docker build -t registry.example.com/greenai-agent:0.1.0 .
FROM python:3.11-slim
WORKDIR /src
COPY pyproject.toml README.md ./
COPY agent ./agent
COPY collectors ./collectors
RUN pip install --no-cache-dir . && rm -rf /src
WORKDIR /
ENTRYPOINT ["greenai"]
CMD ["agent", "--config", "/etc/greenai/agent.yaml"]
