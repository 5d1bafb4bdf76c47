# One image for the web, the workers and one-off commands.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 STUDY_VAR_DIR=/var/lib/study
RUN apt-get update && apt-get install -y --no-install-recommends fonts-lohit-knda && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
# On a CPU-only web host the CPU wheel of torch is enough; GPU workers build with
# --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu130 (see README).
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --no-cache-dir --extra-index-url "$TORCH_INDEX" -r requirements.txt
COPY . .
RUN DJANGO_SECRET_KEY=build-only python manage.py collectstatic --noinput
RUN useradd --create-home study && mkdir -p /var/lib/study && chown study /var/lib/study
USER study
EXPOSE 8000
CMD ["gunicorn", "--config", "gunicorn.conf.py", "--bind", "0.0.0.0:8000", "--access-logfile", "-"]
