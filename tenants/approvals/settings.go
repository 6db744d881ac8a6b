package approvals

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	lsql "github.com/locksmithhq/locksmith/sql"
	"github.com/locksmithhq/locksmith/tenants"
)

// webhookSecretField is the seal field of the webhook secret; the row id
// is the tenant id (one settings row per tenant).
const webhookSecretField = "approval_webhook_secret"

// Settings are a tenant's approval settings. The webhook secret is sealed
// and never returned.
type Settings struct {
	// ApproverGroup is the IdP group whose members may vote (default "approvers").
	ApproverGroup string
	// TTL is how long a request lives (default 15 minutes, 1 minute–24 hours).
	TTL time.Duration
	// WebhookURL receives new requests ("" = no webhook).
	WebhookURL       string
	HasWebhookSecret bool
	UpdatedAt        time.Time
}

// DefaultSettings are the settings of a tenant that saved none.
func DefaultSettings() Settings {
	return Settings{ApproverGroup: DefaultApproverGroup, TTL: DefaultTTL}
}

// SettingsInput changes the settings.
type SettingsInput struct {
	ApproverGroup string
	TTL           time.Duration
	WebhookURL    string
	// WebhookSecret: nil keeps the stored secret, "" removes it, anything
	// else (at least 16 characters) replaces it.
	WebhookSecret *string
}

type storedSettings struct {
	Settings
	sealedSecret []byte
}

func loadSettings(ctx context.Context, tx pgx.Tx, tenantID uuid.UUID) (storedSettings, error) {
	s := storedSettings{Settings: DefaultSettings()}
	var ttl int
	err := tx.QueryRow(ctx, `SELECT approver_group, ttl_seconds, webhook_url, webhook_secret_sealed, updated_at
		FROM approval_settings WHERE tenant_id = $1`, tenantID).Scan(&s.ApproverGroup, &ttl, &s.WebhookURL, &s.sealedSecret, &s.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	s.TTL = time.Duration(ttl) * time.Second
	s.HasWebhookSecret = len(s.sealedSecret) > 0
	return s, err
}

// Settings returns the tenant's approval settings (the defaults if it saved none).
func (s *Service) Settings(ctx context.Context, tenantID uuid.UUID) (Settings, error) {
	var st storedSettings
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		var err error
		st, err = loadSettings(ctx, tx, tenantID)
		return err
	})
	if err != nil {
		return Settings{}, fmt.Errorf("approvals: settings: %w", lsql.Translate(err))
	}
	return st.Settings, nil
}

// SaveSettings validates and stores the settings. A webhook URL is checked
// by the egress client (https, public address) and needs a secret. Errors
// are *tenants.Error naming the field: approver_group, ttl, webhook_url,
// webhook_secret.
func (s *Service) SaveSettings(ctx context.Context, tenantID uuid.UUID, in SettingsInput) (Settings, error) {
	in.ApproverGroup = strings.TrimSpace(in.ApproverGroup)
	if in.ApproverGroup == "" || len(in.ApproverGroup) > 255 {
		return Settings{}, tenants.Invalid("approver_group", "name the IdP group whose members approve (1–255 characters)")
	}
	if in.TTL == 0 {
		in.TTL = DefaultTTL
	}
	if in.TTL < MinTTL || in.TTL > MaxTTL || in.TTL%time.Second != 0 {
		return Settings{}, tenants.Invalid("ttl", "must be whole seconds between 1 minute and 24 hours")
	}
	in.WebhookURL = strings.TrimSpace(in.WebhookURL)
	if in.WebhookURL != "" {
		if err := s.egress.CheckURL(ctx, in.WebhookURL); err != nil {
			return Settings{}, &tenants.Error{Kind: tenants.ErrInvalid, Field: "webhook_url", Message: err.Error(), Err: err}
		}
	}
	if in.WebhookSecret != nil && *in.WebhookSecret != "" && len(*in.WebhookSecret) < minSecretLen {
		return Settings{}, tenants.Invalid("webhook_secret", fmt.Sprintf("must be at least %d characters", minSecretLen))
	}
	var out Settings
	err := s.db.InTenant(ctx, tenantID, func(tx pgx.Tx) error {
		cur, err := loadSettings(ctx, tx, tenantID)
		if err != nil {
			return err
		}
		sealed := cur.sealedSecret
		if in.WebhookSecret != nil {
			sealed = nil
			if *in.WebhookSecret != "" {
				if sealed, err = s.sealer.Seal(ctx, tenantID, tenantID, webhookSecretField, []byte(*in.WebhookSecret)); err != nil {
					return err
				}
			}
		}
		if in.WebhookURL != "" && len(sealed) == 0 {
			return tenants.Invalid("webhook_secret", "a signing secret is required with a webhook URL")
		}
		out = Settings{ApproverGroup: in.ApproverGroup, TTL: in.TTL, WebhookURL: in.WebhookURL, HasWebhookSecret: len(sealed) > 0}
		return tx.QueryRow(ctx, `INSERT INTO approval_settings (tenant_id, approver_group, ttl_seconds, webhook_url, webhook_secret_sealed)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (tenant_id) DO UPDATE SET approver_group = EXCLUDED.approver_group, ttl_seconds = EXCLUDED.ttl_seconds,
				webhook_url = EXCLUDED.webhook_url, webhook_secret_sealed = EXCLUDED.webhook_secret_sealed, updated_at = now()
			RETURNING updated_at`, tenantID, in.ApproverGroup, int(in.TTL/time.Second), in.WebhookURL, sealed).Scan(&out.UpdatedAt)
	})
	var pe *tenants.Error
	if errors.As(err, &pe) {
		return Settings{}, pe
	}
	if err != nil {
		return Settings{}, fmt.Errorf("approvals: save settings: %w", lsql.Translate(err))
	}
	return out, nil
}
